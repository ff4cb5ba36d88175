// Front: the entry points (hak_* and, in the release library, the C and C++
// allocator symbols), process initialisation and fork safety.
#pragma once

#include "hakmem.h"

namespace hakmem {

// Runs process initialisation once (settings, fork handlers). Cheap after the first call.
void front_ensure_init();
// The purge thread (lifecycle.cc): asks for it (mallctl's "background_thread"),
// or lets it idle; whether it runs and purges.
void front_purge_thread_request(bool on);
bool front_purge_thread_running();
// mallctl's figures (mallctl.cc): their lock made usable in a forked child.
void mallctl_fork_child();

}  // namespace hakmem
