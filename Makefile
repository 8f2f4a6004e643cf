# Candor: the commands a user types. See README.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: setup run test test-sanitize bench-lfw clean

setup:            ## install Debian packages, fetch + verify models, build (idempotent)
	@bash scripts/setup.sh

run: setup        ## start the service on 127.0.0.1:8080 with the embedded SQLite store
	@bash scripts/run.sh

test: setup       ## the whole test suite (.ci/run calls exactly this)
	@cd $(BUILD) && ctest --output-on-failure --no-tests=error -j $(JOBS)

test-sanitize:    ## the suite built with AddressSanitizer + UndefinedBehaviorSanitizer
	@CANDOR_BUILD_DIR=build-asan CANDOR_CMAKE_ARGS="-DCANDOR_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo" bash scripts/setup.sh
	@cd build-asan && ASAN_OPTIONS=detect_leaks=0 ctest --output-on-failure --no-tests=error -j $(JOBS)

bench-lfw: setup  ## LFW accuracy (needs ../shared/datasets/lfw)
	@$(BUILD)/candor bench lfw

clean:
	rm -rf $(BUILD) build-asan
