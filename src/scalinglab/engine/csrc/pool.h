// The extension's own parallel-for (pool.cpp), for the CPU's shared with other processes.
//
// ATen's parallel_for (OpenMP, static schedule) splits the work evenly and waits for every
// thread of the team. When another process holds a core, the thread on it runs a time slice
// late and the whole step waits for it at each of the ~150 parallel regions of a decode step:
// on the 2-core machine, loaded, 2 threads ran 1.5x SLOWER than 1. Here work is claimed chunk
// by chunk from an atomic counter, the calling thread works too, and it waits only for chunks
// another thread has already claimed: a descheduled worker costs at most its one chunk, and
// with every other core busy the call degrades to the calling thread doing it all.
#pragma once
#include <cstdint>
#include <functional>

// fn(begin, end) over [0, n) in chunks of `chunk`, on at most at::get_num_threads() threads
// (the caller included); serial when n <= chunk, or when called from inside a pool task.
void pool_for(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn);
