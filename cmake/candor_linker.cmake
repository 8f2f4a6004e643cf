# Link with LLVM's lld (Debian package lld, scripts/deps.txt) when the compiler accepts it.
# GNU ld spends 1.2 s linking one test executable of the GCC build and 2.8 s one of the ASan
# build (debug line tables, the sanitizer runtimes); lld links the same in 0.12 and 0.55 s.
# The build links about 50 executables per tree and CI builds three trees, so this is minutes
# of CI, most of it at the end of each build where the links run one after another.
# Measured in session 8 by re-running one link.txt (attack_test) with and without -fuse-ld=lld.
include(CheckLinkerFlag)
check_linker_flag(CXX "-fuse-ld=lld" CANDOR_HAVE_LLD)
option(CANDOR_LLD "Link with lld when it is installed" ${CANDOR_HAVE_LLD})
if(CANDOR_LLD)
  if(NOT CANDOR_HAVE_LLD)
    message(FATAL_ERROR "CANDOR_LLD is ON but the compiler cannot link with -fuse-ld=lld (apt-get install lld)")
  endif()
  add_link_options(-fuse-ld=lld)
endif()
