# Every dependency comes from Debian 12 (scripts/deps.txt); README "Dependencies" says why each is here.
find_package(OpenCV 4.6 REQUIRED COMPONENTS core imgproc imgcodecs dnn)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)
find_package(SQLite3 REQUIRED)
pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET libpq)  # the PostgreSQL store
find_package(nlohmann_json 3.11 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED)

# OpenCV as an imported target with SYSTEM includes.
add_library(candor_opencv INTERFACE)
target_include_directories(candor_opencv SYSTEM INTERFACE ${OpenCV_INCLUDE_DIRS})
target_link_libraries(candor_opencv INTERFACE ${OpenCV_LIBS})

# FAISS (Debian builds it static, generic x86-64, BLAS through libblas.so.3 = OpenBLAS once installed).
find_package(faiss REQUIRED CONFIG)
find_package(BLAS REQUIRED)
find_package(LAPACK REQUIRED)
add_library(candor_faiss INTERFACE)
target_link_libraries(candor_faiss INTERFACE faiss OpenMP::OpenMP_CXX ${LAPACK_LIBRARIES} ${BLAS_LIBRARIES})

# hnswlib is header-only, so it is compiled with our own flags (AVX2 where we ask for it).
find_path(HNSWLIB_INCLUDE_DIR hnswlib/hnswlib.h REQUIRED)
add_library(candor_hnswlib INTERFACE)
target_include_directories(candor_hnswlib SYSTEM INTERFACE ${HNSWLIB_INCLUDE_DIR})
