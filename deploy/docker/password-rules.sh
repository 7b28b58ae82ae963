# Sourced by db-init.sh and postgres-entrypoint.sh (installed beside them as
# /usr/local/lib/kooisv/password-rules.sh): the marketplace's password rule, spec §8.

# password_ok PASSWORD ACCOUNT: true when PASSWORD has >= 8 characters, >= 2 character classes
# and is not the account name; otherwise prints which rule failed and returns 1.
password_ok() {
    local pw=$1 user=$2 classes=0
    [ "${#pw}" -ge 8 ] || { echo "shorter than 8 characters"; return 1; }
    [[ $pw == *[a-z]* ]] && classes=$((classes + 1))
    [[ $pw == *[A-Z]* ]] && classes=$((classes + 1))
    [[ $pw == *[0-9]* ]] && classes=$((classes + 1))
    [[ $pw == *[^a-zA-Z0-9]* ]] && classes=$((classes + 1))
    [ "$classes" -ge 2 ] || { echo "fewer than 2 character classes"; return 1; }
    [ "${pw,,}" != "${user,,}" ] || { echo "equals the account name"; return 1; }
    return 0
}
