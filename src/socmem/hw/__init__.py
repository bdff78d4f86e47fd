"""What silicon does: the SMMU's stream table, translation caches, walker and fault records.

Functional models only (no clock of their own); :mod:`socmem.sim` adds time.  The kernel
drivers that program this hardware live in :mod:`socmem.linux`.
"""
