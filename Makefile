# stackops.webstack: the two commands are `make lab` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR ?= 1
PYTHON ?= python3

# The molecule scenarios of `make test`, one after the other: site (the
# whole stack on the 10-host production topology, Debian 13, converged once
# with mitogen; then every drill of every tier against it, the rolling
# upgrade under load and check mode) and stack12 (every tier on Debian 12
# plus a Patroni 3.0 replica). `site+stack12` would run stack12 beside site
# (tools/run_scenarios.py); measured on 2 cores it saves nothing, since both
# converges are CPU-bound (docs/benchmarks.md).
SCENARIOS ?= site stack12
# One scenario per role, for working on that role (its own checks and
# drills): `make test-roles`, or `make test-all` for everything.
ROLE_SCENARIOS := common nginx app postgresql redis monitoring backup
INVENTORIES := development staging production lab

.PHONY: help setup docker images bootstrap lint syntax unit molecule test test-roles test-all drill lab lab-converge lab-destroy clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: ## Python virtualenv from requirements-dev.txt (cached) and the collection link
	@$(PYTHON) tools/labctl.py venv

docker: ## Install and start the Docker engine when it is not running
	@$(PYTHON) tools/labctl.py docker

images: docker ## Build the Debian 13 and 12 lab images when missing
	@$(PYTHON) tools/labctl.py images

bootstrap: setup images ## Everything the lab and the tests need

lint: setup ## yamllint, ansible-lint (production profile), ruff, README variable tables, syntax checks
	yamllint --strict .
	ansible-lint
	ruff check .
	ruff format --check .
	python3 tools/vardocs.py --check
	@$(MAKE) --no-print-directory syntax

syntax: setup ## ansible-playbook --syntax-check of every playbook against every inventory
	@for inv in $(INVENTORIES); do \
	  ansible-playbook --syntax-check -i inventories/$$inv site.yml playbooks/*.yml >/dev/null \
	    || { echo "syntax check failed with inventories/$$inv (the error names the playbook)"; exit 1; }; \
	  echo "syntax ok: inventories/$$inv"; \
	done

unit: setup ## Python unit tests (plugins, modules, tools, inventories)
	pytest -q tests/unit

molecule: bootstrap ## The molecule scenarios of SCENARIOS (default: site stack12; a+b runs b beside a)
	@$(VENV)/bin/python tools/run_scenarios.py $(SCENARIOS)

test: ## The one test command (CI): lint + unit tests + scenarios site (every drill) and stack12 (Debian 12)
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory lint unit molecule; \
	echo "make test passed in $$(( $$(date +%s) - start )) s"

test-roles: bootstrap ## The role scenarios, one at a time (long: every role's own drills)
	@$(VENV)/bin/python tools/run_scenarios.py $(ROLE_SCENARIOS)

test-all: ## lint + unit tests + every molecule scenario, role scenarios included
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory lint unit molecule SCENARIOS="$(ROLE_SCENARIOS) site stack12"; \
	echo "make test-all passed in $$(( $$(date +%s) - start )) s"

drill: setup ## Run drills again on a converged scenario: make drill SCENARIO=site DRILLS=tests/test_40_postgresql.py
	@$(VENV)/bin/python tools/drill.py $(or $(SCENARIO),site) $(DRILLS)

lab: bootstrap ## Bring up the whole stack in local containers and converge site.yml
	@$(VENV)/bin/python tools/lab.py up

lab-converge: setup ## Converge site.yml against the running lab again
	@$(VENV)/bin/python tools/lab.py converge

lab-destroy: setup ## Remove the lab containers and network
	@$(VENV)/bin/python tools/lab.py down

clean: ## Remove every lab container and network left by any run
	@$(PYTHON) tools/labctl.py clean
