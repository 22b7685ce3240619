package deploy_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The chart runs the image `make image` builds: one name (the chart's
// image.repository) and one version (VERSION, the chart's appVersion).
func TestChartRunsTheImageMakeBuilds(t *testing.T) {
	out, err := exec.Command("make", "-s", "-C", "..", "print-image").Output()
	if err != nil {
		t.Fatalf("make print-image: %v", err)
	}
	built := strings.TrimSpace(string(out))
	var ds struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Image string `yaml:"image"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	only(t, decode(t, render(t)), "DaemonSet", &ds)
	if got := ds.Spec.Template.Spec.Containers[0].Image; got != built {
		t.Fatalf("the chart runs %q, make image builds %q", got, built)
	}
}
