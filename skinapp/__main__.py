from skinapp.cli import main

raise SystemExit(main())
