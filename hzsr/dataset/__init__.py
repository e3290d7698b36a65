"""HDF5 data sets of captures: packing, verification, curation, splits and readers.

``pack`` writes session folders into crash-safe, resumable shards (``shard``: uint8 W/T/reference
tiles laid out for patch reads, metadata, a sha256 per array; ``codecs`` their compression) with a
``manifest``; ``verify`` checks every shard and can rebuild the manifest; ``info`` counts what a
data set holds; ``splits`` makes group-aware, stratified, leak-free splits; ``curate`` subsets by
a query and flags near-duplicates (``phash``); ``query`` is the language of ``pack --filter``
and ``curate --query``, parsed and evaluated as data, never run as Python; ``interop`` ingests
CameraFusion and exports BasicSR folders; ``reader.ShardReader`` serves captures and patches to
training; ``labels`` owns the curation file (accept/reject with a reason) that ``split``,
``curate`` and ``export`` honour, and ``browse`` is the curators' gallery that writes it. See
``docs/dataset.md``.
"""
