// Command pulumi-resource-random: the Pulumi "random" provider, built by
// tools/toolchain/build.sh from the upstream terraform-provider-random Go module and
// pulumi-terraform-bridge.
//
// terraform-provider-random keeps its provider in an internal package, so build.sh
// compiles with `go build -overlay`, which adds ONE new file of ours
// (../../overlay/random/export.go) as package
// github.com/terraform-providers/terraform-provider-random/pulumiexport. No upstream
// file is modified (pulumi-random itself does the same with a shim directory).
package main

import (
	pfbridge "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/terraform-providers/terraform-provider-random/pulumiexport"

	"tradepulse.local/toolchain/tfproviders/internal/bridgemain"
)

// Version is set with -ldflags "-X main.Version=..." by build.sh.
var Version = "0.0.0-dev"

func main() {
	bridgemain.Main(bridgemain.Spec{
		Name: "random", Version: Version, DisplayName: "random", Prefix: "random",
		P: pfbridge.ShimProvider(pulumiexport.New()),
	})
}
