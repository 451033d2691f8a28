// Public runtime controls: the thread count.
#include "lowbit/runtime.h"
#include "runtime/thread_pool.h"

namespace lowbit {

int get_num_threads() { return pool_num_threads(); }
void set_num_threads(int n) { pool_set_num_threads(n); }
int default_num_threads() { return usable_cores(); }
int max_num_threads() { return thread_cap(); }

}  // namespace lowbit
