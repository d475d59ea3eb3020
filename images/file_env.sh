# shellcheck shell=bash
# file_env NAME: the secret convention of the official images, shared by every image of this
# stack (copied into each at build time). NAME may come from the environment or from the file
# that NAME_FILE names, never both; afterwards NAME holds the value and NAME_FILE is unset.
# Sourced by the entrypoints; exits with a message on a conflict or an unreadable file.
file_env() {
  local name=$1 file_var="${1}_FILE"
  local value=${!name:-} file=${!file_var:-}
  if [[ -n $value && -n $file ]]; then
    printf '%s: ERROR: both %s and %s are set: keep one\n' "${0##*/}" "$name" "$file_var" >&2
    exit 1
  fi
  if [[ -n $file ]]; then
    if [[ ! -r $file ]]; then
      printf '%s: ERROR: %s points to %s, which is not a readable file\n' "${0##*/}" "$file_var" "$file" >&2
      exit 1
    fi
    value=$(<"$file")
  fi
  export "$name=$value"
  unset "$file_var"
}
