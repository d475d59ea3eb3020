# Every target is a thin call to one script under scripts/: the logic lives there, one concern
# a file, so it can be read (and run) on its own.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help up down clean logs ps lint test unit dev backup restore bench images

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

up: ## build what is missing, start the stack, wait until every service is healthy
	@scripts/up.sh

down: ## stop the stack (data volumes are kept)
	@scripts/compose.sh down

clean: ## remove the stack AND its data volumes (needs CONFIRM=1)
	@scripts/clean.sh "$(CONFIRM)"

logs: ## follow the logs of every service
	@scripts/compose.sh logs -f --tail=100

ps: ## show the services and their health
	@scripts/compose.sh ps

images: ## build the images (local replacements where no registry answers)
	@scripts/images.sh

lint: ## static checks: compose schema, compose-lint, yamllint, dotenv-linter, hadolint
	@scripts/lint.sh

unit: ## the app's unit tests against a local PostgreSQL + PostGIS
	@scripts/unit.sh

test: ## every suite: unit, static, infra, e2e, browser, faults (brings a test stack up and down)
	@scripts/test.sh

dev: ## run the portal with the app locally, without Docker
	@scripts/dev.sh

backup: ## dump the portal and app databases to backups/
	@scripts/backup.sh

restore: ## load a dump into the running stack: make restore FILE=backups/...
	@scripts/restore.sh "$(FILE)"

bench: ## fan-out benchmark: ours against the Tethys docs' reference setup
	@scripts/bench.sh
