# The Debian package (`make deb`): CPack's DEB generator over these install rules.
#
#   /usr/bin/candor                      the CLI and `candor serve`
#   /usr/share/candor/models/*.onnx      the model pack, exactly the files of config/models.json,
#                                        fetched and SHA-256 checked by scripts/fetch_models.sh
#                                        (make deb runs make setup first); the engine checks
#                                        the hashes again before loading
#   /usr/share/candor/config/models.json the manifest
#   /usr/share/candor/web/               the console
#   /lib/systemd/system/candor.service   the unit (packaging/candor.service)
#   /etc/candor/candor.conf              the serve flags (a conffile)
#   /usr/share/doc/candor/README.md
# The binary finds models/, config/ and web/ under <bin>/../share/candor by itself
# (installed_data_dir in candor/models.h), so one build serves the tree and the package.
include(GNUInstallDirs)

# `cmake --install` and CPack install what is built; they do not first build every target of
# the tree (tests, benchmarks, fuzzers): `make deb` builds the candor target before CPack.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

install(TARGETS candor RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

file(READ "${PROJECT_SOURCE_DIR}/config/models.json" _candor_manifest)
string(JSON _candor_model_count LENGTH "${_candor_manifest}" models)
math(EXPR _candor_last "${_candor_model_count} - 1")
foreach(i RANGE ${_candor_last})
  string(JSON _file GET "${_candor_manifest}" models ${i} file)
  install(FILES "${CANDOR_MODEL_DIR}/${_file}" DESTINATION ${CMAKE_INSTALL_DATADIR}/candor/models)
endforeach()
install(FILES config/models.json DESTINATION ${CMAKE_INSTALL_DATADIR}/candor/config)
install(DIRECTORY web/ DESTINATION ${CMAKE_INSTALL_DATADIR}/candor/web)
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
# Absolute: systemd and dpkg look there whatever the prefix.
install(FILES packaging/candor.service DESTINATION /lib/systemd/system)
install(FILES packaging/candor.conf DESTINATION /etc/candor)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME candor)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "Candor maintainers <candor@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Consent-first face recognition engine and HTTP service")
set(CPACK_PACKAGE_DESCRIPTION
    "Candor detects, embeds and identifies faces against collections of enrolled subjects who gave \
consent, with encrypted templates and a hash-chained audit log, served over HTTP by systemd.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_FILE_NAME "candor_${PROJECT_VERSION}_amd64")
set(CPACK_OUTPUT_FILE_PREFIX "${PROJECT_BINARY_DIR}/package")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE amd64)
set(CPACK_DEBIAN_PACKAGE_SECTION misc)
# Shared libraries found by dpkg-shlibdeps (OpenCV, SQLite, libpq, libsodium, FAISS, ...);
# adduser for the postinst.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${PROJECT_SOURCE_DIR}/packaging/debian/postinst;${PROJECT_SOURCE_DIR}/packaging/debian/prerm;${PROJECT_SOURCE_DIR}/packaging/debian/postrm;${PROJECT_SOURCE_DIR}/packaging/debian/conffiles")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
