"""Clinical reasoning: the lexicon, findings from text, the decision table, the scope guard.

Imports nothing of retrieval, answer, present or web (import-linter checks it)."""
