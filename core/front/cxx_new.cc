// Every C++ operator new and delete form, on top of the C entry points.
// The throwing forms follow [new.delete]: on failure, call the installed
// new-handler and retry; with no handler, throw std::bad_alloc.
// This is the only translation unit built with exceptions.
#ifdef HAKMEM_OVERRIDE

#include <errno.h>

#include <new>

#include "front/front_internal.h"
#include "hakmem.h"

using hakmem::front_free;
using hakmem::front_malloc;

namespace {

[[gnu::noinline]] void* new_slow(std::size_t size, std::size_t align, bool nothrow) {
  for (;;) {
    void* p = align <= 16 ? front_malloc(size) : hak_aligned_alloc(align, size);
    if (p != nullptr) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) {
      if (nothrow) return nullptr;
      throw std::bad_alloc();
    }
    if (nothrow) {
      try {
        handler();
      } catch (...) {
        return nullptr;
      }
    } else {
      handler();
    }
  }
}

inline void* new_impl(std::size_t size) {
  void* p = front_malloc(size);
  return p != nullptr ? p : new_slow(size, 0, false);
}
inline void* new_aligned(std::size_t size, std::align_val_t al) {
  void* p = hak_aligned_alloc(static_cast<std::size_t>(al), size);
  return p != nullptr ? p : new_slow(size, static_cast<std::size_t>(al), false);
}
inline void* new_nothrow(std::size_t size) noexcept {
  void* p = front_malloc(size);
  return p != nullptr ? p : new_slow(size, 0, true);
}
inline void* new_aligned_nothrow(std::size_t size, std::align_val_t al) noexcept {
  void* p = hak_aligned_alloc(static_cast<std::size_t>(al), size);
  return p != nullptr ? p : new_slow(size, static_cast<std::size_t>(al), true);
}

}  // namespace

#define HAK_EXPORT __attribute__((visibility("default")))

HAK_EXPORT void* operator new(std::size_t n) { return new_impl(n); }
HAK_EXPORT void* operator new[](std::size_t n) { return new_impl(n); }
HAK_EXPORT void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return new_nothrow(n); }
HAK_EXPORT void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return new_nothrow(n); }
HAK_EXPORT void* operator new(std::size_t n, std::align_val_t a) { return new_aligned(n, a); }
HAK_EXPORT void* operator new[](std::size_t n, std::align_val_t a) { return new_aligned(n, a); }
HAK_EXPORT void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_aligned_nothrow(n, a);
}
HAK_EXPORT void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_aligned_nothrow(n, a);
}

HAK_EXPORT void operator delete(void* p) noexcept { front_free(p); }
HAK_EXPORT void operator delete[](void* p) noexcept { front_free(p); }
HAK_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { front_free(p); }
HAK_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept { front_free(p); }
HAK_EXPORT void operator delete(void* p, std::size_t n) noexcept { hak_free_sized(p, n); }
HAK_EXPORT void operator delete[](void* p, std::size_t n) noexcept { hak_free_sized(p, n); }
HAK_EXPORT void operator delete(void* p, std::align_val_t) noexcept { front_free(p); }
HAK_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { front_free(p); }
HAK_EXPORT void operator delete(void* p, std::size_t n, std::align_val_t) noexcept { hak_free_sized(p, n); }
HAK_EXPORT void operator delete[](void* p, std::size_t n, std::align_val_t) noexcept { hak_free_sized(p, n); }
HAK_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { front_free(p); }
HAK_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { front_free(p); }

#endif  // HAKMEM_OVERRIDE
