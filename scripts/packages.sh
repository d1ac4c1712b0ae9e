# Sourced by scripts/up and scripts/test: installs Debian packages that are missing.
#
# install_needs "package file" ...
#   installs (apt-get, with sudo unless root) every package not installed yet, then checks that
#   each package gave the file it is listed with, so a package that does not give what it is
#   there for fails at once instead of somewhere later.
install_needs() {
  local need package file missing=() sudo=""
  for need in "$@"; do
    package=${need%% *}
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  for need in "$@"; do
    package=${need%% *}
    file=${need#* }
    if [ ! -e "$file" ]; then
      echo "$0: $package is installed but $file is not there" >&2
      exit 1
    fi
  done
}
