"""dma-buf and synchronisation: ``drivers/dma-buf/`` of Linux (v6.12 semantics).

* :mod:`.fence` — ``dma-fence.c``: :class:`~.fence.DmaFence`, contexts, callbacks,
  signalling, waits in model time, the stub; :class:`~.fence.DmaBufCore` (one model clock
  and one finding log shared by everything dma-buf).
* :mod:`.fence_chain` — ``dma-fence-chain.c``; :mod:`.fence_array` —
  ``dma-fence-array.c``; :mod:`.fence_unwrap` — ``dma-fence-unwrap.c`` (merge).
* :mod:`.resv` — ``dma-resv.c``: reservation objects and usages.
* :mod:`.sync_file` — ``sync_file.c`` (uAPI ioctls); :mod:`.sw_sync` — ``sw_sync.c``.
"""
