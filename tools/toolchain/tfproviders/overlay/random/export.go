// Package pulumiexport is injected into the terraform-provider-random module at build
// time by `go build -overlay` (see tools/toolchain/build.sh); it only re-exports the
// module's internal provider constructor.
package pulumiexport

import (
	"github.com/hashicorp/terraform-plugin-framework/provider"

	internal "github.com/terraform-providers/terraform-provider-random/internal/provider"
)

func New() provider.Provider { return internal.New() }
