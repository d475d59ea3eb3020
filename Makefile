# Every target is one call of the stackctl package (python3 -m stackctl --help) or of pytest:
# the logic lives there, one concern a module.
SHELL := /bin/bash
.DEFAULT_GOAL := help
STACKCTL := python3 -m stackctl

.PHONY: help up down clean logs ps images env lint test unit fuzz soak dev backup restore bench measure page-weight swarm-up swarm-down

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

up: ## build what is missing, start the stack, wait until every service is healthy
	@$(STACKCTL) up

down: ## stop the stack (data volumes are kept)
	@$(STACKCTL) down

clean: ## remove the stack AND its data volumes (needs CONFIRM=1)
	@$(STACKCTL) clean $(if $(filter 1,$(CONFIRM)),--confirm)

logs: ## follow the logs of every service
	@$(STACKCTL) compose logs -f --tail=100

ps: ## show the services and their health
	@$(STACKCTL) compose ps

images: ## build the images (local stand-ins where no registry answers)
	@$(STACKCTL) images

env: ## write the env files and their secrets (make up does it too)
	@$(STACKCTL) env

test: ## every suite, one pytest run (brings a test stack up and down); ARGS= goes to pytest
	@$(STACKCTL) test $(ARGS)

lint: ## the static checks alone: shellcheck, ruff, hadolint, compose, yaml, env files
	@$(STACKCTL) test tests/static/test_lint.py $(ARGS)

unit: ## the app's unit tests alone, against a local PostgreSQL + PostGIS
	@$(STACKCTL) test tests/unit $(ARGS)

fuzz: ## the bad-input properties, thorough: over 10,000 generated inputs against a test stack, counted; failures kept in build/fuzz-examples
	@HYPOTHESIS_PROFILE=thorough FUZZ_MIN_INPUTS=$${FUZZ_MIN_INPUTS:-10000} $(STACKCTL) test tests/faults/test_50_badinput.py $(ARGS)

soak: ## SOAK_MINUTES (30) of 1,000 churning clients, traffic and scheduled faults, sampled for leaks; writes docs/reliability.md
	@SOAK_MINUTES=$${SOAK_MINUTES:-30} SOAK_CLIENTS=$${SOAK_CLIENTS:-1000} SOAK_CLIENT_LIFETIME=$${SOAK_CLIENT_LIFETIME:-120} \
	  SOAK_REPORT_DIR=$${SOAK_REPORT_DIR:-docs} $(STACKCTL) test tests/soak $(ARGS)

dev: ## run the portal with the app locally, without Docker
	@$(STACKCTL) dev

backup: ## the databases and the tethys-persist volume to backups/ (KEEP_DAILY=7 KEEP_WEEKLY=4: prune older ones)
	@$(STACKCTL) backup

restore: ## load a dump into the running stack: make restore FILE=backups/...
	@$(STACKCTL) restore "$(FILE)"

bench: ## fan-out benchmark: ours, the Tethys docs' setup, the steps between, the limit; the reconnect storm (docs/benchmarks.md)
	@$(STACKCTL) bench

swarm-up: ## deploy (or update) the stack on Docker Swarm, WEB_REPLICAS web tasks (docs/swarm.md)
	@$(STACKCTL) swarm up

swarm-down: ## remove the Swarm stack (volumes kept; leaves the swarm if swarm-up made it)
	@$(STACKCTL) swarm down

measure: ## first start, restart and stop times of the web service
	@$(STACKCTL) measure

page-weight: ## the app's home page with 1,000 dams in Chromium: bytes, requests, load time (cold, warm)
	@$(STACKCTL) pageweight
