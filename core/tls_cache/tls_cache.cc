#include "tls_cache/tls_cache.h"

namespace hakmem {

// Zero-initialised: every list empty with capacity 0, so a thread's first
// malloc and first free both land in the refill engine, which registers it.
HAK_TLS ThreadCache t_cache;

}  // namespace hakmem
