from visionfleet.cli.main import main

main()
