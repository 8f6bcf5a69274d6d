# Fragmentation Gradient Descent (FGD) kernel: per node, the growth of the node's expected
# GPU fragmentation if a task were placed there (Weng et al., USENIX ATC'23).
# reference/fgd.py states the definitions in plain Python; the tests compare the two.
#
# Array layout (N nodes, G device slots per node, U distinct per-device GPU demands,
# T task types). GPU amounts are in devices (1.0 = one whole GPU).
#   cpu_free   : float64[N]     free CPU per node (same unit as t_cpu / cpu, e.g. millicores)
#   mem_free   : float64[N]     free memory per node (same unit as t_mem / mem)
#   dev_free   : float64[N, G]  free part of each GPU device in [0, 1]; absent slots are 0
#   node_model : uint64[N]      one bit naming the node's GPU model (0 = no model)
#   mask       : uint8[N]       1 = candidate node (static predicates passed)
#   g_values   : float64[U]     distinct per-device demands of the GPU task types, in (0, 1]
#   t_cpu      : float64[T]     CPU request of each task type
#   t_mem      : float64[T]     memory request of each task type
#   t_g        : int32[T]       index into g_values, or -1 for a type that needs no GPU
#   t_ndev     : int32[T]       devices the type needs (1 for a fraction)
#   t_models   : uint64[T]      GPU models the type may use (bits as in node_model)
#   t_weight   : float64[T]     popularity of each type (normally summing to 1)
# The candidate task: cpu, mem, gpu (per-device demand; 0 = none; < 1 = a fraction),
# ndev (devices), models (allowed model bits).
# Outputs:
#   out_delta  : float64[N]     F(after) - F(before); +inf where the task does not fit
#   out_device : int32[N]       the device a fractional task should take on that node, else -1
# cache (optional FragCache, one per task class): per node, the answer (delta, device) and the
#   node state it was computed for (key float64[N, G+2]: cpu, memory, device row); a node whose
#   state is unchanged since the class's last call is answered from it.
# device_view: the device rows from the session's GPU-sharing arrays (idle_gpu float64[N],
#   dev_used / dev_alloc / dev_rel float64[N, D], see gpusharing.pxd) into out float64[N, W>=D].
# band_scores: delta float64[N] + dev_free float64[N, W] -> out float64[N], the nodeplacement-band
#   score (band for the smallest delta, 0 for the largest, minus tie * free GPU; 0 = no fit).
