"""Learn: train and evaluate temporal modules on stored frame vectors.

captions (caption files -> pairs), training (InfoNCE on frame vectors), evaluation and metrics
(retrieval recall, honest ties), reindex (re-aggregate stored frames with another temporal module)."""
