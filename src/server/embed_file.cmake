# Writes a C++ source defining candor::openapi_document() from a JSON file, as a
# byte array (a raw string literal this long trips -Woverlength-strings).
# Usage: cmake -DINPUT=openapi.json -DOUTPUT=openapi_embedded.cpp -P embed_file.cmake
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_len)
math(EXPR size "${hex_len} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${hex}")
string(REGEX REPLACE "(('[^']*',){16})" "\\1\n    " bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp"
"// Generated from src/server/openapi.json by embed_file.cmake; do not edit.\n"
"#include \"candor/server.h\"\n\n"
"namespace candor {\nnamespace {\nconstexpr char kDocument[${size}] = {\n    ${bytes}};\n}  // namespace\n\n"
"std::string_view openapi_document() { return {kDocument, sizeof kDocument}; }\n\n}  // namespace candor\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
