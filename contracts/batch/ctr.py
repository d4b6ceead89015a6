"""The CTR batch format: the one definition that ctr datamodules produce and ctr models read.

Every tensor is batched (first dim B):
  dense  [B, M] float32  numeric fields after the dataset's transform (M may be 0: Criteo_x4 buckets them all);
  sparse [B, N] int64    categorical fields, one index per field in 0..field_dims[f]-1, where index 0 is the
                         out-of-vocabulary bucket (values never seen in training, or rarer than min_count);
  label  [B]    float32  click / income label in {0, 1}.
Models receive `field_dims` (N cardinalities, OOV bucket included) and `num_dense` (M) from the datamodule.
"""
DENSE = "dense"
SPARSE = "sparse"
LABEL = "label"
OOV = 0
