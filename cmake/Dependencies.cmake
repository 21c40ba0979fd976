# Finds every external library Codex-Universal links against. Each one comes
# from a Debian package; a missing one stops configuration with the package
# name to install, so a user never has to guess (scripts/install-deps.sh
# installs them all).
find_package(PkgConfig REQUIRED)

function(cu_missing what debian_pkg)
  message(FATAL_ERROR
    "${what} not found. Install it with:\n"
    "    sudo apt-get install ${debian_pkg}\n"
    "or run scripts/install-deps.sh, which installs every dependency.")
endfunction()

# pkg-config module -> imported target PkgConfig::<name>
macro(cu_require_pkg name module debian_pkg)
  pkg_check_modules(${name} IMPORTED_TARGET ${module})
  if(NOT ${name}_FOUND)
    cu_missing("${module} (pkg-config)" "${debian_pkg}")
  endif()
endmacro()

find_package(MPI COMPONENTS C QUIET)
if(NOT MPI_C_FOUND)
  cu_missing("MPI (C bindings)" "libopenmpi-dev openmpi-bin")
endif()

cu_require_pkg(OPENBLAS openblas libopenblas-dev)
find_path(CBLAS_INCLUDE_DIR cblas.h PATHS ${OPENBLAS_INCLUDE_DIRS}
          PATH_SUFFIXES openblas-pthread openblas)
if(NOT CBLAS_INCLUDE_DIR)
  cu_missing("cblas.h (OpenBLAS)" "libopenblas-dev")
endif()

# oneDNN: the bf16 matrix products (model/gemm.c)
find_path(DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.h)
find_library(DNNL_LIBRARY NAMES dnnl)
if(NOT DNNL_INCLUDE_DIR OR NOT DNNL_LIBRARY)
  cu_missing("oneDNN (dnnl)" "libdnnl-dev")
endif()

find_package(OpenMP COMPONENTS C QUIET)
if(NOT OpenMP_C_FOUND)
  cu_missing("OpenMP for C" "build-essential (gcc's libgomp)")
endif()

find_library(SCALAPACK_LIBRARY NAMES scalapack-openmpi scalapack)
if(NOT SCALAPACK_LIBRARY)
  cu_missing("ScaLAPACK (Open MPI build)" "libscalapack-openmpi-dev")
endif()

cu_require_pkg(HDF5 hdf5-openmpi libhdf5-openmpi-dev)
# SQLite with FTS5: codex-ita's knowledge index (ita/kb.c)
cu_require_pkg(SQLITE3 sqlite3 libsqlite3-dev)
set(CMAKE_REQUIRED_INCLUDES ${HDF5_INCLUDE_DIRS} ${MPI_C_INCLUDE_DIRS})
include(CheckSymbolExists)
check_symbol_exists(H5_HAVE_PARALLEL "H5pubconf.h" CU_HDF5_IS_PARALLEL)
unset(CMAKE_REQUIRED_INCLUDES)
if(NOT CU_HDF5_IS_PARALLEL)
  cu_missing("parallel HDF5 (H5_HAVE_PARALLEL)" "libhdf5-openmpi-dev")
endif()
find_program(H5DUMP_EXECUTABLE h5dump)

cu_require_pkg(YAML yaml-0.1 libyaml-dev)
cu_require_pkg(JANSSON jansson libjansson-dev)
cu_require_pkg(PCRE2 libpcre2-8 libpcre2-dev)
cu_require_pkg(PCRE2_32 libpcre2-32 libpcre2-dev) # tokenizer.json Split patterns
cu_require_pkg(UTF8PROC libutf8proc libutf8proc-dev) # tokenizer.json NFC normalizer
cu_require_pkg(SECCOMP libseccomp libseccomp-dev)
cu_require_pkg(H2O libh2o-evloop libh2o-evloop-dev)

find_package(OpenSSL QUIET COMPONENTS Crypto SSL)
if(NOT OPENSSL_FOUND)
  cu_missing("OpenSSL" "libssl-dev")
endif()

find_package(Python3 COMPONENTS Interpreter QUIET)
