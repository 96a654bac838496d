"""How rows become model input: the encoder of linear models (:mod:`.encoder`, into
:mod:`.onehot` blocks), the columns of boosted trees (:mod:`.trees`), labels, the
holdout split and weights (:mod:`.batches`) and the on-disk block cache
(:mod:`.cache`)."""
