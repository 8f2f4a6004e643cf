# Candor: the commands a user types. See README.
BUILD ?= build
JOBS ?= $(shell nproc)

FUZZ_SECONDS ?= 300
# Extra ctest arguments for test-sanitize and test-tsan, e.g. CTEST_ARGS='-R Server'.
CTEST_ARGS ?=

.PHONY: setup run test test-sanitize test-tsan fuzz fuzz-ci bench-lfw deb clean

setup:            ## install Debian packages, fetch + verify models, build (idempotent)
	@bash scripts/setup.sh

run: setup        ## start the service on 127.0.0.1:8080 with the embedded SQLite store
	@bash scripts/run.sh

test: setup       ## the whole test suite (.ci/run calls exactly this)
	@cd $(BUILD) && ctest --output-on-failure --no-tests=error -j $(JOBS)

test-sanitize:    ## the whole suite under AddressSanitizer + UBSan (preset asan, clang, build-asan/)
	@CANDOR_PRESET=asan bash scripts/setup.sh
	@ctest --preset asan -j $(JOBS) $(CTEST_ARGS)

test-tsan:        ## the concurrency tests under ThreadSanitizer (preset tsan, build-tsan/)
	@CANDOR_PRESET=tsan bash scripts/setup.sh
	@ctest --preset tsan -j $(JOBS) $(CTEST_ARGS)
	@ctest --preset tsan-index $(CTEST_ARGS)

fuzz:             ## every fuzz target for FUZZ_SECONDS (300) each (build preset fuzz, build-asan/)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh

fuzz-ci:          ## every fuzz target for 30 s (what CI runs: a regression check on the seeds; `make fuzz` searches)
	@FUZZ_SECONDS=30 bash fuzz/run.sh

bench-lfw: setup  ## LFW accuracy (needs ../shared/datasets/lfw)
	@$(BUILD)/candor bench lfw

deb: setup        ## the Debian package build/package/candor_<version>_amd64.deb (binary, models, console, systemd unit)
	@cmake --build $(BUILD) -j $(JOBS) --target candor
	@cd $(BUILD) && cpack -G DEB
	@ls -l $(BUILD)/package/*.deb

clean:
	rm -rf $(BUILD) build-asan build-tsan
