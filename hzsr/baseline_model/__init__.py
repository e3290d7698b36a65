"""The HZSR reference pipeline (not built yet: see the open issues). The only package that may
import torch (extra ``[train]``)."""
