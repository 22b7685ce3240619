// Package deploy holds etcdpulse's Kubernetes deployment: the Helm chart
// in helm/etcdpulse (the source), the plain manifest etcdpulse.yaml that
// `make generate` renders from it, and kustomization.yaml around that. Its
// Go code renders the chart with a real helm binary for tests: Render, and
// Matrix, the value sets that together cover every preset and every toggle.
// Its tests check the chart against the real helm and promtool.
package deploy
