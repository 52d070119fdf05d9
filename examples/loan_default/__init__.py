"""The loan-default example project: its data generator (its Feast repo is the top-level
feature_repo/, its profiles are in configs/)."""
