"""The batch format of each family: the one definition that the family's datamodules produce and its models read."""
