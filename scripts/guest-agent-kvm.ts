// Entry point of the KVM guest image (bundled by build-guest-image.sh): the agent's KVM guest
// program, which the Debian template runs from the agent's dist.
import '../agent/src/kvm-guest-main.js';
