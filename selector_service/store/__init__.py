"""The bottom layer: the database, its tables, the rows of the cache and of pools, and the blob codec.

No module outside this package opens a connection or builds SQL.
"""
