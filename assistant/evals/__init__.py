"""The evaluation: question-set cases, metrics, the runner and its report."""
