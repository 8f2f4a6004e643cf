# ThreadSanitizer build (CANDOR_SANITIZE_THREAD, the tsan preset): Debian's OpenCV runs its
# parallel loops (every DNN inference) on oneTBB's worker threads, which are not
# instrumented and hand work over through atomics TSan cannot see, so every inference would
# be reported as a race on its own buffers. Instead of suppressing OpenCV wholesale (which
# would also hide a real race in how Candor shares a network between its threads), every
# executable of this build makes OpenCV run its loops on the calling thread
# (tsan_opencv_serial.cpp). The threads TSan then watches are all Candor's or cpp-httplib's.
# (OPENCV_FOR_THREADS_NUM does not do this: the TBB backend ignores it.)
if(CANDOR_SANITIZE_THREAD)
  add_library(candor_tsan_opencv_serial OBJECT ${CMAKE_CURRENT_LIST_DIR}/tsan_opencv_serial.cpp)
  target_link_libraries(candor_tsan_opencv_serial PRIVATE candor_opencv)
  link_libraries(candor_tsan_opencv_serial)
endif()
