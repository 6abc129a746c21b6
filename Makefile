# keyferry Makefile. Tools are pinned and installed into ./bin; the local control plane
# (kube-apiserver, etcd, kubectl) is built once per machine by hack/build-control-plane.sh.

IMG ?= keyferry:dev
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The newest version CHANGELOG.md describes: what make test-cluster releases and installs.
RELEASE_VERSION ?= $(shell grep -m1 -oE '^\#\# \[v[0-9]+\.[0-9]+\.[0-9]+[^]]*\]' CHANGELOG.md | tr -d '[]\# ')

CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
HELM_VERSION ?= v3.22.0
CYCLONEDX_VERSION ?= v1.10.0

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint
HELM ?= $(LOCALBIN)/helm
KUBECTL ?= kubectl
GO_TEST_FLAGS ?= -race -count=1

export GOTOOLCHAIN := local

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate CRDs and RBAC from the API types and markers (and the chart's CRDs from them).
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	go run ./hack/crdversions config/crd/bases
	hack/chart-crds.sh

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint, and go vet on the upgrade proof and the soak (each has its own TestMain beside the node suite's).
	$(GOLANGCI_LINT) run ./...
	go vet -tags upgrade ./test/node/...
	go vet -tags soak ./test/node/...

.PHONY: check-tree
check-tree: ## Fail on tracked build outputs, files over 1 MiB outside testdata/ and docs/, or an untidy go.mod.
	hack/check-tree.sh

.PHONY: control-plane
control-plane: ## Build (once per machine) the local kube-apiserver, etcd and kubectl.
	@hack/build-control-plane.sh >/dev/null

.PHONY: test
test: manifests generate fmt vet helm cyclonedx ## Run all tests, integration tests on a real local apiserver.
	KUBEBUILDER_ASSETS="$$(hack/build-control-plane.sh)" HELM="$(HELM)" CYCLONEDX="$(LOCALBIN)/cyclonedx-gomod" go test $(GO_TEST_FLAGS) ./...

.PHONY: kubectl-plugin
kubectl-plugin: ## Build the kubectl plugin into ./bin/kubectl-keyferry (put ./bin on PATH: kubectl keyferry ...).
	go build -trimpath -ldflags "-s -w -X github.com/keyferry/keyferry/internal/version.Version=$(VERSION)" -o $(LOCALBIN)/kubectl-keyferry ./cmd/kubectl-keyferry

.PHONY: demo
demo: ## Run keyferry locally: control plane, dev vault, sample bindings, manager (Ctrl-C stops; KEYFERRY_DEMO_ONCE=1 exits after the first sync).
	go run ./hack/demo

.PHONY: demo-node
demo-node: image ## The demo plus a real local node and a pod reading a synced Secret (root).
	hack/build-node.sh >/dev/null
	go run ./hack/demo -node

.PHONY: test-e2e
test-e2e: helm ## End-to-end tests: the manager and kubectl binaries against the local control plane and dev vault.
	HELM="$(HELM)" go test -tags e2e -count=1 -timeout 20m ./test/e2e/...

.PHONY: test-cluster
test-cluster: image helm cyclonedx ## Tests on a real local node (root: kubelet, containerd, runc, CNI; node binaries built once per machine), installing a release of this tree from a registry on the node.
	go run ./hack/release -allow-dirty -version $(RELEASE_VERSION) -out $(LOCALBIN)/release -helm $(HELM) -cyclonedx $(LOCALBIN)/cyclonedx-gomod
	hack/build-node.sh >/dev/null
	go test -tags node -count=1 -timeout 20m ./test/node/...

.PHONY: test-upgrade
test-upgrade: image helm cyclonedx ## The upgrade proof on a real local node (root): install the previous release (hack/release/previous, rebuilt with git worktree), fill it, helm upgrade to this tree's release and roll back, counting writes, restarts, requests and Ready transitions.
	hack/release/build-previous.sh $(LOCALBIN)/release-previous
	go run ./hack/release -allow-dirty -version $(RELEASE_VERSION) -out $(LOCALBIN)/release -helm $(HELM) -cyclonedx $(LOCALBIN)/cyclonedx-gomod
	hack/build-node.sh >/dev/null
	go test -tags upgrade -count=1 -timeout 30m -v -run 'TestUpgrade' ./test/node/...

DURATION ?= 4m

.PHONY: soak
soak: image helm cyclonedx ## The soak on a real local node (root): 2,000 bindings, workloads and readers through DURATION (default 4m) of value changes and faults; asserts nothing lost, no bad read, restarts as expected, no growth; writes bin/soak/soak.json and soak.png.
	go run ./hack/release -allow-dirty -version $(RELEASE_VERSION) -out $(LOCALBIN)/release -helm $(HELM) -cyclonedx $(LOCALBIN)/cyclonedx-gomod
	hack/build-node.sh >/dev/null
	mkdir -p $(LOCALBIN)/soak
	KEYFERRY_SOAK_DURATION=$(DURATION) KEYFERRY_SOAK_OUT=$(LOCALBIN)/soak go test -tags soak -count=1 -timeout 6h -v -run 'TestSoak' ./test/node/...
	go run ./hack/soakplot -in $(LOCALBIN)/soak/soak.json -out $(LOCALBIN)/soak/soak.png

BENCH_ARGS ?= -n 1000 -e 10 -c 1 -u 0 -interval 30s

.PHONY: bench
bench: ## Go benchmarks, then the scale benchmark (hack/bench, BENCH_ARGS) on the local stack.
	go test -run '^$$' -bench . -benchmem ./...
	go run ./hack/bench -header $(BENCH_ARGS)

FANOUT_ARGS ?= -n 1000 -interval 30s -intervals 1

.PHONY: bench-fanout
bench-fanout: ## One ClusterSecretBinding over N namespaces against N plain bindings (FANOUT_ARGS).
	go run ./hack/bench -header -fanout $(FANOUT_ARGS)

.PHONY: bench-templates
bench-templates: ## N bindings without templates, then N each rendering a dockerconfigjson and a config.json (BENCH_ARGS).
	go run ./hack/bench -header $(BENCH_ARGS)
	go run ./hack/bench $(BENCH_ARGS) -templates

NOISY_ARGS ?= -noisy 500 -backlog 5000

.PHONY: bench-noisy
bench-noisy: ## Noisy neighbours: a healthy tenant's time to Ready idle, beside a hanging tenant, and after another namespace's backlog (NOISY_ARGS).
	go run ./hack/bench -header $(NOISY_ARGS)

.PHONY: fuzz
fuzz: ## Fuzz the decoders and the template bounds for FUZZTIME each (default 30s).
	for f in FuzzParseDotenv FuzzErrorDialects FuzzDecodePayload; do \
		go test -run '^$$' -fuzz "^$$f\$$" -fuzztime $${FUZZTIME:-30s} ./internal/vault/ || exit 1; done
	go test -run '^$$' -fuzz '^FuzzHostileTemplates$$' -fuzztime $${FUZZTIME:-30s} ./internal/render/

##@ Build

.PHONY: build
build: ## Build the manager binary into bin/.
	go build -ldflags "-X github.com/keyferry/keyferry/internal/version.Version=$(VERSION)" -o $(LOCALBIN)/manager ./cmd/manager

.PHONY: run
run: manifests generate ## Run the manager from your host against the current kubeconfig.
	go run ./cmd/manager

.PHONY: image
image: ## Build the images as archives for `docker load` / `ctr images import`, without a Docker engine: the manager (IMG), the dev vault, the test app and the local node's pod sandbox.
	go run ./hack/image -cmd ./cmd/manager -tag $(IMG) -version $(VERSION) -out $(LOCALBIN)/keyferry.tar
	go run ./hack/image -cmd ./hack/devvault -tag keyferry-devvault:dev -version $(VERSION) -out $(LOCALBIN)/keyferry-devvault.tar
	go run ./hack/image -cmd ./hack/testapp -tag keyferry-testapp:dev -version $(VERSION) -out $(LOCALBIN)/keyferry-testapp.tar
	go run ./hack/image -cmd ./hack/pause -tag keyferry-pause:dev -version $(VERSION) -out $(LOCALBIN)/keyferry-pause.tar

.PHONY: release
release: helm cyclonedx ## Write release VERSION=vX.Y.Z into dist/ (offline; refuses a dirty tree): image indexes for amd64 and arm64, binaries, SBOM, the chart pinned by digest, checksums, notes.
	go run ./hack/release -version $(VERSION) -out dist -helm $(HELM) -cyclonedx $(LOCALBIN)/cyclonedx-gomod

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build --build-arg VERSION=$(VERSION) -t $(IMG) .

##@ Deployment

.PHONY: install
install: manifests ## Install the CRDs into the cluster of the current kubeconfig.
	$(KUBECTL) apply --server-side -f config/crd/bases

.PHONY: uninstall
uninstall: manifests ## Remove the CRDs (and every keyferry object) from the cluster.
	$(KUBECTL) delete --ignore-not-found -f config/crd/bases

.PHONY: deploy
deploy: manifests ## Deploy the operator with image IMG into the cluster.
	cd config/manager && $(KUBECTL) kustomize . >/dev/null
	$(KUBECTL) kustomize config/default | sed 's#image: controller:latest#image: $(IMG)#' | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: ## Remove the operator from the cluster.
	$(KUBECTL) delete --ignore-not-found -k config/default

##@ Tools

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

.PHONY: controller-gen
controller-gen: $(LOCALBIN) ## Install controller-gen into bin/.
	@test -x $(CONTROLLER_GEN) && $(CONTROLLER_GEN) --version 2>/dev/null | grep -q $(CONTROLLER_TOOLS_VERSION) || \
		GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

.PHONY: helm
helm: $(LOCALBIN) ## Install helm into bin/ (pinned, built from its Go module: no binary download).
	@test -x $(HELM) -a -f $(LOCALBIN)/.helm-$(HELM_VERSION) || { \
		echo "building helm $(HELM_VERSION) from its Go module (once per machine)"; \
		GOBIN=$(LOCALBIN) go install -ldflags "-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION) && \
		touch $(LOCALBIN)/.helm-$(HELM_VERSION); }

.PHONY: cyclonedx
cyclonedx: $(LOCALBIN) ## Install cyclonedx-gomod (SBOMs) into bin/ (pinned).
	@test -x $(LOCALBIN)/cyclonedx-gomod -a -f $(LOCALBIN)/.cyclonedx-$(CYCLONEDX_VERSION) || { \
		GOBIN=$(LOCALBIN) go install github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@$(CYCLONEDX_VERSION) && \
		touch $(LOCALBIN)/.cyclonedx-$(CYCLONEDX_VERSION); }

.PHONY: golangci-lint
golangci-lint: $(LOCALBIN) ## Install golangci-lint into bin/.
	@test -x $(GOLANGCI_LINT) && $(GOLANGCI_LINT) version 2>/dev/null | grep -q $(GOLANGCI_LINT_VERSION:v%=%) || \
		GOBIN=$(LOCALBIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
