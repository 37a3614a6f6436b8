"""One presentation layer: every face renders the same view of an answer."""
