#include "runtime/output_arena.h"

#include <cstdlib>
#include <new>

#include "runtime/aligned_buffer.h"

namespace lowbit {

OutputArena& OutputArena::instance() {
  static OutputArena* arena = new OutputArena();   // never destroyed: blocks may outlive exit
  return *arena;
}

void* OutputArena::take(size_t bytes) {
  const size_t size = rounded(bytes);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(size);
    if (it != free_.end()) {
      void* block = it->second;
      free_.erase(it);
      cached_ -= size;
      return block;
    }
  }
  return aligned_alloc_bytes(size, 4096);
}

void OutputArena::give(void* block, size_t bytes) {
  const size_t size = rounded(bytes);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cached_ + size <= limit_) {
      free_.emplace(size, block);
      cached_ += size;
      return;
    }
  }
  std::free(block);
}

void OutputArena::set_limit(size_t bytes) {
  std::multimap<size_t, void*> drop;
  {
    std::lock_guard<std::mutex> lock(mu_);
    limit_ = bytes;
    while (cached_ > limit_ && !free_.empty()) {
      auto it = std::prev(free_.end());   // the largest blocks go first
      cached_ -= it->first;
      drop.insert(*it);
      free_.erase(it);
    }
  }
  for (auto& entry : drop) std::free(entry.second);
}

size_t OutputArena::limit() const {
  std::lock_guard<std::mutex> lock(mu_);
  return limit_;
}

size_t OutputArena::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cached_;
}

}  // namespace lowbit
