"""cryptolake_nb: a tick store in the Jupyter kernel."""
