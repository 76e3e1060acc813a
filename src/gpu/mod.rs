//! CUDA: context, streams, device memory, the embedded kernel module and typed launches.
