"""HDF5 shards, manifest, curation and group-aware splits (not built yet: see the open issues)."""
