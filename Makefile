# imgfs build and test entry points. `make setup` installs system packages on a fresh Debian machine
# and the model (scripts/fetch-model.sh: models/ here, and $XDG_DATA_HOME/imgfs/models, default
# ~/.local/share/imgfs/models, where an imgfs binary installed anywhere finds it).
SHELL := /bin/bash
GO ?= go
BIN := bin/imgfs

.PHONY: all build setup run test clean

all: build

setup:
	bash scripts/setup.sh

build:
	$(GO) build -o $(BIN) ./cmd/imgfs

# make run MOUNT=~/photos: set up (system packages and the model), build and mount MOUNT on the
# embedded local store (foreground with FG=1). The first run creates the vault and asks the
# passphrase twice.
MOUNT ?= $(HOME)/photos
run:
	IMGFS_SETUP_MINIMAL=1 bash scripts/setup.sh
	$(GO) build -o $(BIN) ./cmd/imgfs
	mkdir -p $(MOUNT)
	$(BIN) mount $(if $(FG),-f) $(MOUNT)

test: setup build
	bash scripts/test.sh

clean:
	rm -rf bin
