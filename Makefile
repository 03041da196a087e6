# imgfs build and test entry points. `make setup` installs system packages on a fresh Debian machine.
SHELL := /bin/bash
GO ?= go
BIN := bin/imgfs

.PHONY: all build setup test unit integration fuzz bench clean

all: build

setup:
	bash scripts/setup.sh

build:
	$(GO) build -o $(BIN) ./cmd/imgfs

test: setup build
	bash scripts/test.sh

clean:
	rm -rf bin
