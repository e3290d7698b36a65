"""``hzsr dataset browse DIR``: a local gallery for curators over a whole data set.

``gallery`` indexes the manifest, splits and the curation file (``hzsr.dataset.labels``) and
answers filtered pages and one capture's details, near-duplicate clusters included; ``tiles``
reads thumbnails and 1:1 windows from the shards (tile reads, never whole frames) with a
cache, and computes the blending maps on the window with ``hzsr.qa.register``; ``server`` serves
them and the one static page (``static/index.html``) on 127.0.0.1 with the standard library's
``http.server``. No URL names a file: every request names a capture id, which must be in the
manifest, so nothing outside the data set can be served. See ``docs/dataset.md``.
"""
