// Finds a function of hakmem's that the library does not export (hidden in
// libhakmem.so, e.g. hakmem::stats_write_report) in the symbol table of the
// object that defines hak_malloc, so that a test can call the very code the
// allocator runs.
#pragma once

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "hakmem.h"

namespace test_support {

// Calls fn(name, run-time address) for each symbol of ELF type `type`
// (STT_FUNC, STT_OBJECT) in the .symtab of the object that defines
// hak_malloc, until fn returns true. Returns the object's path ("" when it
// cannot be read).
template <typename Fn>
inline std::string each_library_symbol(unsigned type, Fn fn) {
  Dl_info info;
  struct link_map* map = nullptr;
  if (dladdr1(reinterpret_cast<void*>(&hak_malloc), &info, reinterpret_cast<void**>(&map), RTLD_DL_LINKMAP) == 0 ||
      map == nullptr)
    return "";
  int fd = open(info.dli_fname, O_RDONLY | O_CLOEXEC);
  if (fd < 0) fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);  // hak_malloc linked into the program itself
  if (fd < 0) return "";
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return "";
  }
  size_t len = static_cast<size_t>(st.st_size);
  void* mem = mmap(nullptr, len, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (mem == MAP_FAILED) return "";
  const char* base = static_cast<const char*>(mem);
  const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(base);
  bool stop = false;
  if (memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 && eh->e_shoff != 0) {
    const auto* sh = reinterpret_cast<const Elf64_Shdr*>(base + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum && !stop; ++i) {
      if (sh[i].sh_type != SHT_SYMTAB) continue;
      const auto* syms = reinterpret_cast<const Elf64_Sym*>(base + sh[i].sh_offset);
      size_t count = sh[i].sh_size / sizeof(Elf64_Sym);
      const char* strtab = base + sh[sh[i].sh_link].sh_offset;
      for (size_t k = 0; k < count && !stop; ++k)
        if (ELF64_ST_TYPE(syms[k].st_info) == type && syms[k].st_value != 0)
          stop = fn(strtab + syms[k].st_name, reinterpret_cast<void*>(map->l_addr + syms[k].st_value));
    }
  }
  munmap(mem, len);
  return info.dli_fname;
}

// The run-time address of the symbol `name` (mangled) of ELF type `type`,
// or nullptr.
inline void* hidden_symbol_of_type(const char* name, unsigned type) {
  void* result = nullptr;
  each_library_symbol(type, [&](const char* symbol, void* address) {
    if (strcmp(symbol, name) != 0) return false;
    result = address;
    return true;
  });
  return result;
}

// A function (hakmem::stats_write_report, say) or a variable
// (hakmem::g_config) of the library's, by its mangled name.
inline void* hidden_symbol(const char* name) { return hidden_symbol_of_type(name, STT_FUNC); }
inline void* hidden_object(const char* name) { return hidden_symbol_of_type(name, STT_OBJECT); }

}  // namespace test_support
