"""The faces on HTTP: the API, CDS Hooks, the Gradio UI and the server that mounts them."""
