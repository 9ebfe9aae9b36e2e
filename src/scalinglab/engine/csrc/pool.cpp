// pool_for (pool.h): workers that spin briefly on a job counter, then sleep on a condition
// variable; jobs are claimed chunk by chunk. A job lives in a shared_ptr, so a worker that
// wakes after the call returned finds every chunk claimed and touches nothing else.
#include <ATen/Parallel.h>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define SL_PAUSE() _mm_pause()
#else
#define SL_PAUSE() std::this_thread::yield()
#endif

namespace {

struct Job {
  const std::function<void(int64_t, int64_t)>* fn;
  int64_t n, chunk, chunks;
  std::atomic<int64_t> next{0}, done{0};
};

thread_local bool in_task = false;

// claim and run chunks of `j` until none is left; returns the chunks this thread finished
void work(Job& j) {
  for (;;) {
    const int64_t c = j.next.fetch_add(1, std::memory_order_relaxed);
    if (c >= j.chunks) return;
    const int64_t b = c * j.chunk;
    (*j.fn)(b, std::min(j.n, b + j.chunk));
    j.done.fetch_add(1, std::memory_order_release);
  }
}

class Pool {
 public:
  void run(int threads, int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn) {
    grow(threads - 1);
    auto job = std::make_shared<Job>();
    job->fn = &fn; job->n = n; job->chunk = chunk; job->chunks = (n + chunk - 1) / chunk;
    {
      std::lock_guard<std::mutex> g(mu_);
      job_ = job;
      wanted_ = threads - 1;
      gen_.fetch_add(1, std::memory_order_release);
    }
    if (sleeping_.load(std::memory_order_acquire) > 0) cv_.notify_all();
    in_task = true;
    work(*job);
    in_task = false;
    // wait only for chunks that other threads claimed and are running
    for (int spins = 0; job->done.load(std::memory_order_acquire) < job->chunks; ++spins) {
      if (spins < 4000) SL_PAUSE(); else std::this_thread::yield();
    }
  }

 private:
  void grow(int workers) {
    std::lock_guard<std::mutex> g(grow_mu_);
    while (static_cast<int>(threads_.size()) < workers) {
      const int id = static_cast<int>(threads_.size());
      threads_.emplace_back([this, id] { loop(id); });
      threads_.back().detach();
    }
  }

  void loop(int id) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g = gen_.load(std::memory_order_acquire);
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);  // the next call of a step comes sooner
      for (int spins = 1; g == seen; ++spins) {
        SL_PAUSE();
        g = gen_.load(std::memory_order_acquire);
        if (spins % 64 == 0 && std::chrono::steady_clock::now() > until) break;
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lk(mu_);
        sleeping_.fetch_add(1, std::memory_order_acq_rel);
        cv_.wait(lk, [&] { return gen_.load(std::memory_order_acquire) != seen; });
        sleeping_.fetch_sub(1, std::memory_order_acq_rel);
      }
      std::shared_ptr<Job> job;
      int wanted;
      {
        std::lock_guard<std::mutex> lk(mu_);
        job = job_;
        seen = gen_.load(std::memory_order_acquire);
        wanted = wanted_;
      }
      if (job && id < wanted) {
        in_task = true;
        work(*job);
        in_task = false;
      }
    }
  }

  std::mutex mu_, grow_mu_;
  std::condition_variable cv_;
  std::shared_ptr<Job> job_;
  int wanted_ = 0;
  std::atomic<uint64_t> gen_{0};
  std::atomic<int> sleeping_{0};
  std::vector<std::thread> threads_;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: detached workers may outlive static destruction
  return *p;
}

}  // namespace

void pool_for(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(chunk, 1);
  const int threads = at::get_num_threads();
  if (n <= chunk || threads <= 1 || in_task) {
    fn(0, n);
    return;
  }
  pool().run(threads, n, chunk, fn);
}
