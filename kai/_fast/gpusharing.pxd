# Shared-GPU (fraction / gpu-memory / multi-fraction) kernels over per-device arrays.
#
# Node arrays are the placement kernel's (see placement.pxd): float64[R, N] allocatable, idle,
# releasing, avail; the GPU column (``gpu_col``) counts whole devices. A shared group takes
# one whole device off the node's idle GPU column when it is created (off releasing when it
# was created by pipelining onto a releasing device) and gives it back when it empties; when
# every fraction in a group is releasing, the device counts as releasing too (KAI's
# GpuSharingNodeInfo accounting).
#
# Per-device arrays, D = device slots per node (max GPUs of any node), a slot is a group
# when dev_used > 0:
#   dev_used     : float64[N, D]  portion of every fraction charged to the group (allocated,
#                                 releasing and pipelined), KAI's UsedSharedGPUsMemory / device memory
#   dev_alloc    : float64[N, D]  portion of the allocated fractions (running, bound, allocated,
#                                 releasing; not pipelined), KAI's AllocatedSharedGPUsMemory
#   dev_rel      : float64[N, D]  releasing portion minus what pipelined fractions already claim,
#                                 KAI's ReleasingSharedGPUsMemory
#   dev_from_rel : uint8[N, D]    1 = the group took its device from the releasing column
# Per task:
#   portion      : float64[N]     the task's portion per device on each node (gpu-memory / the
#                                 node's device memory); <= 0 or > 1 = the node cannot host it
#   out_devs     : int32[num_devices]  chosen devices: slot >= 0 (existing group), -1 (a new
#                                 group on an idle device), -2 (a new group on a releasing device)

cdef double group_free(double used, double alloc, double rel) noexcept nogil
