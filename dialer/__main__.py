from dialer.runtime.cli import main

main()
