"""Public keys for the SSH key tests, each with the fingerprint `ssh-keygen -lf` printed for it.

Made with OpenSSH 9.2 (`ssh-keygen -t <type> [-b <bits>] -C <comment>`); the private halves were
thrown away. ssh-keygen cannot make a hardware-backed (sk-) key without a token, so those two were
assembled by hand from their wire format (a fixed 32-byte ed25519 key; the P-256 base point) and
fingerprinted by `ssh-keygen -lf`, which reads them like any other .pub file.
"""

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL5B4gyaN/Iau7rkbgjAsRr22TkxWJeEQK6rjA48y/av ed25519@example.test"
ECDSA_256 = (
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEYGlqiXtfruI+hMxdTy4Krh+u/BYTAKwcRMAkUg"
    "mLfdhc6aio97OD0ZIsoISe1+sKwQu+V+YEpjdKPcR0yF94o= ecdsa256@example.test"
)
ECDSA_384 = (
    "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBDdUgz5EHJznSsiq78qT07nJq/6sU30iBB+qhS2m"
    "SXHvyv+osEVW8NdKrb/6SqxOomgaLt4fHEw3k5exdotveIn16tkOlsz2IPUjY/9Iu1mLXkegA2b+W6ChgK1rwpdFaw== ecdsa384@example.test"
)
ECDSA_521 = (
    "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBADScZ7as1AFKKsi8abfovB1FMci6fBvsli1Q+N+"
    "yuEEAGzfI5ScMzC6ve6f5+dmeqTKXyAlkujCYxzqzEr8LpRXBAF6LZfNnGAX1g1z2fKLO3/jq1Achu7hjDvT2NEmkZ3ua4I/jZGGJZgXekcE0J5/"
    "IZ6FNoFKnHnVJ/po5ssA32B5BA== ecdsa521@example.test"
)
RSA_2048 = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCWL8UT1+ZXSPv2u43PHOasw5BFrpM8a3Xj2kfBMY2k7N6fn9OTsz05VCv7kLprkC0bq/2piekI"
    "llWJUMjlptg6msiG+loLcl/aGnjsCKlqxBPIzg3faXJbXOjhlGyzxEEUza4D8TeO5utVqcLt0SjdnO8k5FFzR1xmjZOZolp4dYv7qyj9u9NVjG6P"
    "giLYkwk4zuXVt8semXhZCrVVQSRb9C1NF5MOmPUQymxb/EmEYDk2PtMNIaoRIsLGO2DJcYxpgGlJLogzwbn++M/ZdbsB1EXkoNOf74N1KjbXiiOO"
    "+umTClvNcdf75MhG8MrSM0KG+F5asShlkaX9fp6ElWnf rsa2048@example.test"
)
SK_ED25519 = (
    "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd"
    "Hh8gAAAABHNzaDo= yubikey@example.test"
)
SK_ECDSA_256 = (
    "sk-ecdsa-sha2-nistp256@openssh.com AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20AAAAIbmlzdHAyNTYAAABBBGsX"
    "0fLhLEJH+Lzm5WOkQPJ3A32BLeszoPShOUXYmMKWT+NC4v4af5uO5+tKfA+eFivOM1drMV7Oy7ZAaDe/UfUAAAAEc3NoOg== yubikey@example.test"
)
RSA_1024 = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCqhxJ/gHfxz6SC4lRpIiS4l4j/q9b9d9ZjFJ5Kekp3NaFHZWEmqhwfpOufVwrA/Uoam/IaXXuf"
    "b9TRQooppchQX4W2Vw7Sf8LofPhoJLgid9484QCbpoeSdofn4wgep1ZYfbhMuqhsczUbNrQPnpiF6P96Nn0/cJIvcjUWXzsKuQ== rsa1024@example.test"
)
DSA = (
    "ssh-dss AAAAB3NzaC1kc3MAAACBAJHANxyQRESnjhyrj06LUI0BDCb8pMIAzz/ePxN8xR31v7MxJ3S9tb1cM9QPn6JV093NNDVVCcMp1nkPcY0e"
    "pmgwVErrpFiIxWuWNKBlCkr1OdrrDoqljLY8ETIqMJpOXOVY20F3b0eMNlf09xshT61/PoEfMyweRFNvkv/q/A7xAAAAFQCV1KHHiDEFX9OTtDXd"
    "Y0n+3hUEdQAAAIAMWKIMdP8WhXJtK8jvva59XcSk9gjp01RJrS97cXO6wZcg6+HZi8x4+2OO/KTtDhUxNdMIcEPWNYxmn9LkR2ckgVyrp9bJuQDL"
    "O2YVgtZqq/S9FomLXn2nqU0lPsFGmTA4HfugSiyZ85oTGCVh+qzuGrYnbNrPOhg4qk7tDiMxzwAAAIAFi+jj8NADdjlrkcJze1fvAcxwAPDPiS0j"
    "SixipXdye8R7NFyovlVu36ZbzpvBAPDEVnccazRCpdO8WEk1U5dYXX59rbcTv9WLhNES1D5n0phk1tED/QghIhrUorOTJ8FGaFUBJuxEqG5FzYgl"
    "WjRmjCqPt6bl+PhlCpP1tJUWzw== dsa@example.test"
)

# key -> (type, bits, fingerprint as `ssh-keygen -lf` prints it)
ACCEPTED = {
    ED25519: ("ssh-ed25519", 256, "SHA256:iKeJ1uW0sNXr6GSnWGyMclanZMMWMiJz5XC0dEdcZsQ"),
    ECDSA_256: ("ecdsa-sha2-nistp256", 256, "SHA256:QbXtFEt3+m4i3pZwTGcuC3JERFNQKAGvdF2mUfsTj/c"),
    ECDSA_384: ("ecdsa-sha2-nistp384", 384, "SHA256:J8nG9gf8FhHQniCt2pwH5H+4wEyyazZ0RaI1JcZlI58"),
    ECDSA_521: ("ecdsa-sha2-nistp521", 521, "SHA256:TXX/1d8TwdNlIby7TsxO1QjkEjripByc/8sODvhf9Dg"),
    RSA_2048: ("ssh-rsa", 2048, "SHA256:TYY83m07Qjt4bk3sIk9uE54WhE59YmVJAeqi2s0Rw1o"),
    SK_ED25519: ("sk-ssh-ed25519@openssh.com", 256, "SHA256:nX0hpi5mKbTIJ10yBq5/sLQhiI1Y0RBAqN0drDdgJWs"),
    SK_ECDSA_256: ("sk-ecdsa-sha2-nistp256@openssh.com", 256, "SHA256:Sq6FPgsPWZc3RXSXKFq4uzEhPEwaHZCAoX46/7Q5024"),
}
