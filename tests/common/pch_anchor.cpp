// The translation unit that compiles the test suite's shared precompiled header
// (tests/CMakeLists.txt, candor_test_pch); every test executable reuses that header
// instead of parsing GoogleTest, OpenCV and nlohmann/json again.
